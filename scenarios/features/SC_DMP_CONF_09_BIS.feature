# language: fr
Fonctionnalité: SC.DMP/CONF.09.BIS, CONF.06.BIS, CONF.06 — Opposition, retrait du consentement, accès en urgence
  Le patient informé peut s'opposer à l'alimentation de son DMP : plus aucun document ne part, pas même celui
  déjà en file d'attente. Le consentement à la consultation vaut pour l'épisode de soins et se retire : retiré,
  plus aucune consultation. L'accès en urgence (bris de glace) se fait sans consentement, motivé, tracé dans le
  dossier et déclaré comme tel au DMP (VIHF), qui en informe le patient. Chaque verdict est aussi lu dans le
  journal du DMP : ce qui a été envoyé, ou ne l'a pas été.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"

  @exigence=SC.DMP/CONF.09.BIS
  Scénario: Le patient s'oppose à l'alimentation de son DMP
    Quand le médecin rédige une ordonnance de produits de santé envoyée au DMP dans 8 secondes
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est en attente d'envoi différé au DMP
    Quand le médecin enregistre l'opposition du patient à l'alimentation de son DMP
    Alors l'envoi au DMP de l'ordonnance est annulé
    Et le dossier indique que l'alimentation du DMP est impossible du fait de l'opposition du patient
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance n'est pas envoyée au DMP, avec l'opposition du patient pour motif
    Et aucun document n'a été envoyé au DMP du patient, même après le délai d'envoi

  @exigence=SC.DMP/CONF.06 @exigence=SC.DMP/CONF.06.BIS
  Scénario: Le patient retire son consentement à la consultation
    Quand le médecin enregistre le consentement du patient
    Alors l'autorisation d'accès au DMP est posée
    Et le DMP est consulté avec le consentement du patient
    Quand le médecin enregistre le retrait du consentement du patient
    Alors la consultation du DMP est impossible et la liste DICA indique le retrait du consentement
    Quand le médecin demande d'actualiser les documents du DMP
    Alors le LGC refuse en expliquant que le patient n'a pas consenti
    Et aucune consultation ni récupération de document n'a été envoyée au DMP après le retrait
    Et le recueil puis le retrait du consentement sont tracés dans le dossier

  @exigence=SC.DMP/CONF.06.BIS
  Scénario: Accès en urgence au DMP (bris de glace)
    Quand le médecin déclare un accès en urgence au DMP (bris de glace) avec le motif "Patient inconscient, urgence vitale"
    Alors le DMP est consulté en bris de glace, déclaré comme tel au DMP
    Et l'accès en urgence et son motif sont tracés dans le dossier
