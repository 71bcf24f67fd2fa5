"""PSC-shaped identity claims of a professional persona (userinfo, protocols.md §3.3).

Field names and the OIDs in `Secteur_Activite`, `SubjectRole`, `PSI_Locale` and `Palier_Authentification` are
the ones of the PSC sandbox userinfo. Values that public material does not give are filled as the README says
(empty strings, as PSC sends for unknown fields).
"""

from __future__ import annotations

from simulators.personas import Activite, Professional

OID_SECTEUR = "1.2.250.1.71.4.2.4"
OID_ROLE = "1.2.250.1.213.1.1.5.5"
PSI_LOCALE = "1.2.250.1.213.1.3.1.1"
PALIER = "APPPRIP3^1.2.250.1.213.1.5.1.1.1"

PROFESSIONS = {"10": "Médecin", "21": "Pharmacien", "40": "Chirurgien-dentiste", "50": "Sage-femme",
               "60": "Infirmier"}


def activity(act: Activite) -> dict:
    s = act.structure
    a = s.adresse
    return {
        "codeModeExercice": act.mode_exercice,
        "codeSecteurDactivite": s.secteur_activite,
        "codeSectionPharmacien": "",
        "codeRole": "",
        "codeGenreActivite": "GENR01",
        "numeroSiretSite": s.siret or "",
        "numeroSirenSite": (s.siret or "")[:9],
        "numeroFinessSite": s.finess or "",
        "numeroFinessetablissementJuridique": s.finess_juridique or "",
        "identifiantTechniqueDeLaStructure": s.identifiant_technique or "",
        "raisonSocialeSite": s.nom,
        "enseigneCommercialeSite": "",
        "complementDestinataire": "",
        "complementPointGeographique": "",
        "numeroVoie": a.numero,
        "indiceRepetitionVoie": "",
        "codeTypeDeVoie": "",
        "libelleVoie": a.voie,
        "mentionDistribution": "",
        "bureauCedex": f"{a.code_postal} {a.ville}",
        "codePostal": a.code_postal,
        "codeCommune": a.commune,
        "codePays": "",
        "telephone": s.telephone or "",
        "telephone2": "",
        "telecopie": "",
        "adresseEMail": s.mss_organisationnelle or "",
        "codeDepartement": "",
        "ancienIdentifiantDeLaStructure": s.identifiant_national,
        "autoriteDenregistrement": "",
    }


def ref_pro(p: Professional) -> dict:
    return {
        "codeCivilite": p.civilite,
        "exercices": [{
            "codeProfession": p.profession,
            "codeCategorieProfessionnelle": p.categorie,
            "codeCiviliteDexercice": p.civilite_exercice or "",
            "nomDexercice": p.nom,
            "prenomDexercice": p.prenom,
            "codeTypeSavoirFaire": p.type_savoir_faire or "",
            "codeSavoirFaire": p.savoir_faire or "",
            "activities": [activity(a) for a in p.activites],
        }],
    }


def userinfo(p: Professional) -> dict:
    """The userinfo document PSC returns for this professional."""
    return {
        "sub": p.psc_sub,
        "SubjectNameID": p.national_id,
        "preferred_username": p.national_id,
        "given_name": p.prenom,
        "family_name": p.nom,
        "email_verified": False,
        "SubjectRefPro": ref_pro(p),
        "SubjectOrganization": p.structure.nom,
        "SubjectOrganizationID": p.structure.identifiant_national,
        "SubjectRole": [f"{p.profession}^{OID_ROLE}"],
        "Secteur_Activite": f"{p.secteur_activite}^{OID_SECTEUR}",
        "PSI_Locale": PSI_LOCALE,
        "Palier_Authentification": PALIER,
        "Acces_Regulation_Medicale": "FAUX",
        "Mode_Acces_Raison": "",
        "UITVersion": "1.0",
        "otherIds": [{"identifiant": p.national_id, "origine": "RPPS", "qualite": 1}],
    }


def profession_label(p: Professional) -> str:
    return PROFESSIONS.get(p.profession, f"Profession {p.profession}")
