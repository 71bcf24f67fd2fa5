# language: fr
@exigence=SC.INS.13
Fonctionnalité: SC.INS.13 — Vérification périodique de l'identité auprès de l'INSi
  Une identité récupérée ou qualifiée depuis 4 ans est vérifiée auprès du téléservice INSi, sans action de
  l'utilisateur, à l'ouverture du dossier. Si l'Assurance maladie a changé l'INS de la personne, l'INSi répond le
  nouvel INS avec l'ancien dans son historique : le LGC remplace l'INS, garde l'ancien dans l'historique du dossier,
  conserve le statut et le trace. L'INS n'est envoyé au DMP qu'une fois vérifié, donc le nouveau.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: L'INS changé par l'Assurance maladie remplace l'ancien à la vérification périodique
    Étant donné l'Assurance maladie a attribué à "ADRUN", qualifiée il y a plus de 4 ans, le nouveau matricule INS "2751263220750"
    Quand le médecin ouvre le dossier de "ADRUN"
    Alors le LGC a vérifié l'identité auprès de l'INSi sans action de l'utilisateur, et l'INSi a répondu le nouvel INS avec l'ancien dans son historique
    Et le dossier porte le nouvel INS, l'ancien dans son historique, et l'identité reste qualifiée
    Et le DMP n'est interrogé qu'avec le nouvel INS
    Et les traces du dossier reprennent la vérification INSi et le remplacement de l'INS, avec l'utilisateur
